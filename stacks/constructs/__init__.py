"""One construct per concern; ManagedAgentsStack composes them and makes the cross-construct grants."""
