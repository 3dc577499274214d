"""Outbound API clients. Each takes its transport and credentials in the constructor, returns domain
values and raises its own error tree; base URLs come only from configuration."""
