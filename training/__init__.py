"""Training: Ray Train + DeepSpeed workers that stream token shards."""
