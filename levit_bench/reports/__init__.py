"""The results store and what is made from it: tables, figures, HTML."""
