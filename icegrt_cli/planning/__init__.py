"""Memory planning: what a stage needs per device, before it runs (`icegrt plan`)."""
