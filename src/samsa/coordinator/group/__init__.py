"""The group coordinator: the classic consumer-group protocol and committed offsets."""
