"""kubi: an agentless deployer that equips a Kubernetes platform for production."""
