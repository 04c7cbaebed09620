"""Streamlit-side helpers: shared state (run registry, caches) and plotly figures. No computation
on models here: that is rerelrp_core's job."""
