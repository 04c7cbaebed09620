"""Start the Streamlit app with the heavy lifting done before the first visitor arrives.

``python -m ui.serve [streamlit options]`` is ``streamlit run app.py`` plus a background thread that
imports torch, zennit and scikit-learn, opens the bundled demo run and explains one image, so that
the first page view only draws. Without it (plain ``streamlit run app.py``) the app works the same,
its first view is just slower.
"""
import sys
import threading
from pathlib import Path

from streamlit.web import cli


def warm_up():
    from ui.state import DEMO_RUN, preload
    preload(DEMO_RUN)


def main():
    threading.Thread(target=warm_up, daemon=True, name="warm-up").start()
    app = str(Path(__file__).resolve().parent.parent / "app.py")
    sys.argv = ["streamlit", "run", app, *sys.argv[1:]]
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
