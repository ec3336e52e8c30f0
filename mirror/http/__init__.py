"""HTTP plumbing shared by every route: base URLs, deadlines, one-line answers, the access log."""
