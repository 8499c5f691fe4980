"""Training: click-simulating data pipeline, balanced CE + SP-loss, the trainer."""
