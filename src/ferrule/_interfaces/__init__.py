"""Host-defined interfaces at run time: matching offers to declarations
(offers.py), struct values (structs.py), implementations and their
instances (instances.py, methods.py), and the services registry behind the
host table's query / call / release (services.py)."""
