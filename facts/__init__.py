"""kubi's own pyinfra facts: one shell command each, batched so a deploy plans in few
round trips."""
