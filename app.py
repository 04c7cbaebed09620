"""ReReLRP Explorer: Streamlit entry point (page config, navigation, the shared run picker)."""
import streamlit as st

import rerelrp_core  # noqa: F401  (repairs the torchvision import before anything else)
from ui import links
from ui.state import sidebar
from ui.timing import timed_rerun

st.set_page_config(page_title="ReReLRP Explorer", page_icon=":material/psychology:", layout="wide")
pages = st.navigation([
    st.Page("views/tour.py", title="Tour", icon=":material/tour:", default=True),
    st.Page("views/explore.py", title="Explore", icon=":material/search:"),
    st.Page("views/train.py", title="Train", icon=":material/model_training:"),
    st.Page("views/masking.py", title="Masking", icon=":material/layers:"),
    st.Page("views/forgetting.py", title="Forgetting", icon=":material/trending_down:"),
    st.Page("views/exercises.py", title="Exercises", icon=":material/school:"),
])
page = pages.url_path or "tour"
with timed_rerun(pages.title):
    ignored = links.restore(page)          # a link opened: its run and choices, before anything is drawn
    sidebar(picker=not links.hidden("run"))
    link_slot = st.sidebar.container()     # filled once the page has drawn, with the link to what it shows
    st.sidebar.caption("ReReLRP: LRP finds each task's critical units; the rest is pruned from the task's "
                       "subnetwork and the critical units are frozen (arXiv 2502.10789).")
    links.notice(ignored)
    links.exercise()
    try:
        pages.run()
    finally:
        link_slot.markdown("**Link to this view**", help="Open it in any browser to see this view; the copy "
                           "button is on the right of the address.")
        link_slot.code(links.publish(page), language=None, wrap_lines=True)
