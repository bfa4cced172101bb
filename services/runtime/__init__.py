"""Running the process: configuration (:mod:`.config`), logging (:mod:`.logs`), the embedded
PostgreSQL (:mod:`.embedded`), the supervisor of every background task (:mod:`.supervisor`),
and serving until a signal (:mod:`.serve`)."""
