"""Exercises: ready-made links on the bundled demo runs that a teacher can hand out, and how to make
one out of any view."""
import streamlit as st

from ui.exercises import ready_made
from ui.links import link_to

st.title("Exercises")
st.markdown("Each exercise is a link: it opens one view of a bundled demo run with some controls hidden "
            "and a question on top. Students write an answer, commit it, and only then see what the "
            "network says. Copy a link and hand it out; everyone who opens it sees the same view.")
for exercise in ready_made():
    with st.container(border=True):
        st.markdown(f"**{exercise['title']}** ({exercise['topic']})")
        st.markdown(exercise["params"]["q"])
        url = link_to(exercise["page"], exercise["params"])
        st.page_link(f"views/{exercise['page']}.py", label="Open this exercise", icon=":material/school:",
                     query_params=exercise["params"])
        st.code(url, language=None, wrap_lines=True)
st.subheader("Make your own")
st.markdown("Open any view, set it up, and copy **Link to this view** from the sidebar. Add to the link:\n"
            "- `hide=run,image,answer` (a comma list) to hide controls: `run` (the run picker, every page); "
            "on Explore `image`, `answer` (everything the network says about the image), `pathway`; on "
            "Masking `ablation`, `acc_drop`, `answer`; on Forgetting `cell`, `answer`; on the tour `nav`;\n"
            "- `q=` your question and `reveal=` what to say once an answer is committed (URL-encoded: "
            "spaces as `%20` or `+`).")
