"""ReReLRP Explorer: Streamlit entry point (engine status until the pages land)."""
import streamlit as st

import rerelrp_core  # noqa: F401  (repairs the torchvision import before anything else)
from rerelrp_core.status import engine_status

st.set_page_config(page_title="ReReLRP Explorer", layout="wide")
st.title("ReReLRP Explorer")
st.caption("Interactive, explainable continual learning: LRP finds each task's critical units, "
           "the rest is pruned, the critical units are frozen.")
status = engine_status()
st.subheader("Engine status")
st.table([{"item": k, "value": str(v)} for k, v in status.items()])
