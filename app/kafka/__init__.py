"""The worker's side of Kafka: the faust app and topics, lanes, in-order acks, publishing, dead letters."""
