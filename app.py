"""ReReLRP Explorer: Streamlit entry point (page config, navigation, the shared run picker)."""
import streamlit as st

import rerelrp_core  # noqa: F401  (repairs the torchvision import before anything else)
from ui.state import sidebar
from ui.timing import timed_rerun

st.set_page_config(page_title="ReReLRP Explorer", page_icon=":material/psychology:", layout="wide")
pages = st.navigation([
    st.Page("views/tour.py", title="Tour", icon=":material/tour:", default=True),
    st.Page("views/explore.py", title="Explore", icon=":material/search:"),
    st.Page("views/train.py", title="Train", icon=":material/model_training:"),
    st.Page("views/masking.py", title="Masking", icon=":material/layers:"),
    st.Page("views/forgetting.py", title="Forgetting", icon=":material/trending_down:"),
])
with timed_rerun(pages.title):
    sidebar()
    st.sidebar.caption("ReReLRP: LRP finds each task's critical units; the rest is pruned from the task's "
                       "subnetwork and the critical units are frozen (arXiv 2502.10789).")
    pages.run()
