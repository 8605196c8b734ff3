"""Load testing and capacity planning: the `load_test` asset, its job, sensor and schedule."""
