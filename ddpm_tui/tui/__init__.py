"""The Textual app: screens/ (one per view) and widgets/ (reusable pieces); styles in app.tcss."""
