"""What happened, and why: the activity record's writes (``record``), the read model the console and the CLI
share (``read``), and the pure rules that turn it into words and charts (``explain``, ``charts``)."""
