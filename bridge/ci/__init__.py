"""CI for a pull request: ``records`` (the database's runs and settings as domain values) and ``reconcile``
(make a pull request's CI match the pull request)."""
