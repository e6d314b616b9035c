"""One partition's processor: the deterministic state machine, its RocksDB store, and the leader's services.

A partition worker reads its log partition in order, applies each record to
the state machine, commits the changes with the applied offset in one write
batch, and, while it leads the partition, carries out the resulting actions:
invoking deployments (the invoker), firing timers, shipping the outbox to other
partitions and answering waiting ingress requests.
"""
