"""The model card derived from a fitted model, in the builder only (`Dockerfile.runtime`'s `app` stage runs
`python -m derivecard`): reading a sample, introspecting the estimator, probing it with rows. None of it runs when
the service serves, so none of it is copied into the runtime image; `service/` never imports it (an import-linter
contract in pyproject.toml). It imports the service's own reading of the card and the model (service.bundle,
service.frames) so that the builder reads them exactly as the service will."""
