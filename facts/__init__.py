"""kubi's own pyinfra facts: each is one shell command, batched so a deploy plans in few round trips."""
