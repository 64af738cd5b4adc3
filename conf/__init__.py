"""The Hydra config of every ``aloe`` command, as YAML: ``<command>.yaml`` (the
command's defaults list) and one folder per config group (``backend``,
``agents``, ``prompts``, ``generation``, ``personas``, ``training``, ``model``,
``experiment``, ``debug``). The files hold no defaults of their own: each key's
type, default, help and checks live in the typed schemas, registered in
Hydra's ConfigStore by ``aloesim.orchestration`` (see docs/configuration.md);
a file names its schema in its defaults list and sets only what differs.
"""
