"""Gates for foreign input: each kind of file a user hands in passes one gate that either returns checked data or
raises one :class:`~utils.errors.UserInputError` naming the file and what is wrong, whatever the library below
raises. PyTorch files (`torch_file`, with the torch floor of `torch_floor`) and YAML files (`yaml_file`) live
here; challenge h5 files pass :mod:`utils.data.h5` and config values :mod:`utils.training.build` and
:mod:`utils.model.builder` (docs/architecture.md, "Gates").
"""
