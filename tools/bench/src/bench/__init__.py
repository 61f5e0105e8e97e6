"""The pipeline's benchmark: cases/s, latency per stage, CPU and memory per process, against a bare Kafka chain."""
