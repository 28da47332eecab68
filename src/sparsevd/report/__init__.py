"""Tables and figures from the committed records (or W&B); nothing here imports training."""
