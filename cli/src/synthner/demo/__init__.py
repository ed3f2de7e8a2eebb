"""``synthner demo``, one module per job:

- :mod:`~synthner.demo.options`: the command's options and its errors;
- :mod:`~synthner.demo.stages`: the inputs and the stages' settings (the services' own settings classes);
- :mod:`~synthner.demo.progress`: the progress bars and the deadline's current stage;
- :mod:`~synthner.demo.transports`: the stages in one process, over RabbitMQ, or as separate processes;
- :mod:`~synthner.demo.probe`: the NER API serving the model store, asked one sample request;
- :mod:`~synthner.demo.report`: notes, ``report.html``, its figures and ``summary.json``;
- :mod:`~synthner.demo.run`: the run from checks to the last line.

:mod:`synthner.commands.demo` registers the command; only it and :mod:`~synthner.demo.options` are imported by
``synthner --help``.
"""
