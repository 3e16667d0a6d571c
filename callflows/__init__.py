"""Call flows: definitions as data (YAML) and a pure engine that runs them."""
