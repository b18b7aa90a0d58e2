"""
Budget alerts (``[[alerts]]``): a record subscriber notes which scopes
spent, an off-reactor check asks the ledger for the period's spend, and a
crossing whose claim wins is POSTed once to its webhook.
"""
