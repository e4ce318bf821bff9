"""The mapping files shipped with SalesPulse (``--mapping <name>``)."""
