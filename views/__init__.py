"""The Streamlit views app.py draws: one module per view or part of the page."""
