"""HTTP serving with dynamic batching (optional extra: `pip install paragen[serve]`)."""
