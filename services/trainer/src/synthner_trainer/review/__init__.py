"""Human review of machine annotations: a review queue per dataset version, reviewed documents kept beside the
machine's, the reviewed set as gold, and agreement figures.

Pure parts first (:mod:`.queue` picks the notes, :mod:`.agreement` scores annotators and reviewers), the SQLite part
(:mod:`.store`, tables in the trainer's dataset store file), then the HTTP side (:mod:`.app`: the clinician's page
and its JSON API, served by ``synthner review serve``). Reviewing never blocks the pipeline: nothing waits on it;
the gate reads whatever has been reviewed when it runs.
"""
