"""The write-ahead log: log records and their codec, the partitioner, the `Log` interface and its backends.

`wal.records` defines every record a partition applies and its msgpack codec;
`wal.partitioner` maps keys to partition keys and partition keys to partitions;
`wal.log` defines the `Log` protocol (durable, ordered, partitioned append and
tailing reads), which `wal.embedded.EmbeddedLog` (local files, group commit and
fsync), `wal.memory.MemoryLog` (for tests) and the Kafka backend implement. This
package imports nothing else of duro.
"""
