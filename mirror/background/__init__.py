"""The background side's process: promotion, vetting, watching and notifications."""
