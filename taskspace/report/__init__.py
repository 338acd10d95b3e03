"""Figures and reports, and the one home of statistic labels, units and number formats."""
