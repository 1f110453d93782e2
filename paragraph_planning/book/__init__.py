"""The book: the chapter runner and command line, chart rendering, the Sphinx extension."""
