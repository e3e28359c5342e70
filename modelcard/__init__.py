"""The model card: the contract between the build (imagebuild/, on the host) and the service (service/, in the
image). Its JSON Schema, the checks a schema cannot express, and the typed features a card describes. Standard
library only: neither side's dependencies come with it."""
