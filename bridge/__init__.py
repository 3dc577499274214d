"""ado-dbt bridge: dbt Cloud pull-request CI for Azure DevOps."""

__version__ = "0.1.0"
