"""Dev tooling, fenced off from the product: the sandbox (fake Azure DevOps, dbt Cloud and Entra ID), the private
dev stack, the demo, and the entry points that run the product against them.

Runs from a checkout only: the wheel and the image leave this package out, and nothing in the product imports
it (the `dev-fenced` import-linter contract); the CLI registers `bridge sandbox` and `bridge demo` from it.
"""
