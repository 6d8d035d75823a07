"""`vmqos-cni`: vmqos as a chained CNI plugin (CNI specification 1.0.0), a front end over `services`."""
