import dagster as dg

# One partition per deployment id; the deployment sensor adds them as deployments become READY.
deployments_partitions = dg.DynamicPartitionsDefinition(name="deployments")
