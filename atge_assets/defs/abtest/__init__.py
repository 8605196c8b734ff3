"""A/B tests of Einstein's model variants: intake, analysis and promotion per experiment."""
