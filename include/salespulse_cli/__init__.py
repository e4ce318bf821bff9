"""Entry points that run SalesPulse outside a scheduler: the demo (``python -m salespulse_cli.demo``)."""
