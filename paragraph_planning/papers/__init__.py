"""One module per paper for the computation (a frozen config and ``run(model, data, cfg)`` per
experiment) and one ``*_report`` module per paper for the prose, tables and charts."""
