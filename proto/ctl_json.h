/*
 * ctl_json.h - the control protocol's JSON framing (QMP-shaped), on top of
 * json-c.  Ownership: functions documented "new reference" return objects
 * the caller must json_object_put(); "borrowed" pointers live as long as the
 * object they came from.
 */
#ifndef MIGRELAY_CTL_JSON_H
#define MIGRELAY_CTL_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#define CTL_MAX_LINE		(64 * 1024)	/* bytes per request line */
#define CTL_MAX_DEPTH		16		/* JSON nesting */

/* A parsed request.  All pointers are borrowed from req->root. */
struct ctl_req {
	json_object	*root;		/* owned: put by ctl_req_clear() */
	const char	*execute;
	json_object	*arguments;	/* NULL when absent */
	json_object	*id;		/* NULL when absent */
};

int		 ctl_req_parse(const char *line, size_t len, struct ctl_req *,
		    const char **ret_class, char *errbuf, size_t errlen);
void		 ctl_req_clear(struct ctl_req *);

/* Typed argument getters: 0 found, -ENOENT absent, -EINVAL wrong type. */
int		 ctl_arg_string(json_object *args, const char *name,
		    const char **ret);
int		 ctl_arg_int(json_object *args, const char *name, int64_t *ret);
int		 ctl_args_check(json_object *args, const char *const *allowed,
		    const char **ret_unknown);

/* Builders: new references; they steal value/data, copy id. */
json_object	*ctl_reply_new(json_object *value, json_object *id);
json_object	*ctl_error_new(const char *class, const char *desc,
		    json_object *id);
json_object	*ctl_event_new(const char *name, json_object *data);
json_object	*ctl_greeting_new(int major, int minor, int micro);

#endif /* MIGRELAY_CTL_JSON_H */
