"""One module per expand/contract operation; each plans its phases as data (``core/migrations/steps.py``)."""
