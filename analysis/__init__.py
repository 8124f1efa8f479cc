"""Preference statistics, metric agreement, code classification and the report."""
