"""One partition per canary deployment of a rolling release: each stage's judgement is one
materialization of it."""

import dagster as dg

rollout_partitions = dg.DynamicPartitionsDefinition(name="rollouts")
