"""gunicorn's settings for the web process, read from the working directory by every
gunicorn started here (`make run`, the tests' servers); their command lines add the
address, workers and threads."""

# A request line (method, URL, version) of up to 8 KiB, gunicorn's largest limit and
# nginx's default, reaches Django, which answers bad query parameters in the API's
# error shape; past it gunicorn answers 414 in plain HTML. Headers keep gunicorn's
# limits (100 of 8190 bytes each); bodies are bounded by DATA_UPLOAD_MAX_MEMORY_SIZE.
limit_request_line = 8190
