BEGIN TRANSACTION;
CREATE TABLE applied (
	scope VARCHAR NOT NULL, 
	device VARCHAR NOT NULL, 
	fingerprint TEXT NOT NULL, 
	applied_at DATETIME NOT NULL, 
	PRIMARY KEY (scope, device)
);
INSERT INTO "applied" VALUES('','tap-z','fp-z','2026-12-06 22:04:13.232634');
INSERT INTO "applied" VALUES('','tap-a','fp-a','2026-12-06 22:04:13.232634');
INSERT INTO "applied" VALUES('','tap-m','fp-m','2026-12-06 22:04:13.232634');
INSERT INTO "applied" VALUES('lab-host','tap-vm1','fp-lab','2026-12-06 22:04:13.233255');
INSERT INTO "applied" VALUES('gone','tap-old','fp-old','2026-12-06 22:04:13.233678');
CREATE TABLE events (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, 
	scope VARCHAR NOT NULL, 
	at DATETIME NOT NULL, 
	port VARCHAR NOT NULL, 
	instance VARCHAR, 
	direction VARCHAR, 
	kind VARCHAR NOT NULL, 
	detector VARCHAR, 
	message TEXT NOT NULL
);
INSERT INTO "events" VALUES(1,'','2026-11-30 12:34:56.789000','tap-a','vm1','egress','detected','syn_flood','syn flood 40000 pps');
INSERT INTO "events" VALUES(2,'','2026-11-30 12:34:58.789000','tap-a','vm1',NULL,'quarantined',NULL,'quarantined: syn flood');
CREATE TABLE flavors (
	scope VARCHAR NOT NULL, 
	name VARCHAR NOT NULL, 
	doc TEXT NOT NULL, 
	PRIMARY KEY (scope, name)
);
INSERT INTO "flavors" VALUES('','m1.small','{"cpu":{"shares":512,"period_us":100000,"quota_us":20000},"disk":{"read_bytes_sec":"10mb","read_iops_sec":500},"network":{"ingress":{"rate":"50mbit","peak":"100mbit","burst":"64kb","pps":20000,"pps_burst":2000},"egress":{"rate":"50mbit"}}}');
INSERT INTO "flavors" VALUES('lab-host','m1.resquota','{"extra_specs":{"quota:cpu_shares":"512","quota:vif_inbound_average":"32768","quota:vif_outbound_average":"32768"}}');
CREATE TABLE instances (
	scope VARCHAR NOT NULL, 
	name VARCHAR NOT NULL, 
	flavor VARCHAR, 
	cpu TEXT, 
	disks TEXT NOT NULL, 
	PRIMARY KEY (scope, name), 
	FOREIGN KEY(scope, flavor) REFERENCES flavors (scope, name)
);
INSERT INTO "instances" VALUES('','vm1','m1.small','{"shares":1024}','{"vda":{"total_iops_sec":1000,"total_iops_sec_max":2000},"vdb":{"write_bytes_sec":"1mb","group_name":"slow"}}');
INSERT INTO "instances" VALUES('','vm2',NULL,NULL,'{}');
INSERT INTO "instances" VALUES('','idle',NULL,NULL,'{}');
INSERT INTO "instances" VALUES('lab-host','vm1','m1.resquota',NULL,'{}');
INSERT INTO "instances" VALUES('lab-host','vm2',NULL,NULL,'{}');
CREATE TABLE networks (
	scope VARCHAR NOT NULL, 
	name VARCHAR NOT NULL, 
	policy VARCHAR, 
	PRIMARY KEY (scope, name), 
	FOREIGN KEY(scope, policy) REFERENCES policies (scope, name)
);
INSERT INTO "networks" VALUES('','private','gold');
INSERT INTO "networks" VALUES('','public',NULL);
INSERT INTO "networks" VALUES('lab-host','private','web-tiers');
CREATE TABLE policies (
	scope VARCHAR NOT NULL, 
	name VARCHAR NOT NULL, 
	origin VARCHAR NOT NULL, 
	qos TEXT NOT NULL, 
	PRIMARY KEY (scope, name)
);
INSERT INTO "policies" VALUES('','bw-limiter','neutron','{"egress":{"rate":"3mbit","burst":"37500b"}}');
INSERT INTO "policies" VALUES('','gold','vmqos','{"ingress":{"rate":"100mbit","peak":"200mbit","burst":"64kb","pps":20000,"pps_burst":2000},"egress":{"rate":"100mbit","min":"10mbit","dscp":26}}');
INSERT INTO "policies" VALUES('lab-host','bw-limiter','neutron','{"egress":{"rate":"3mbit","burst":"37500b"}}');
INSERT INTO "policies" VALUES('lab-host','web-tiers','vmqos','{"ingress":{"rate":"50mbit","peak":"100mbit","burst":"256kb"},"egress":{"rate":"20mbit","burst":"64kb","classes":[{"name":"web","share":60,"match":{"protocol":"tcp","ports":[80,443]}},{"name":"rest","share":40}]}}');
CREATE TABLE ports (
	scope VARCHAR NOT NULL, 
	device VARCHAR NOT NULL, 
	instance VARCHAR NOT NULL, 
	network VARCHAR, 
	policy VARCHAR, 
	limits TEXT, 
	egress_mode VARCHAR NOT NULL, 
	mtu INTEGER NOT NULL, 
	position INTEGER NOT NULL, 
	PRIMARY KEY (scope, device), 
	FOREIGN KEY(scope, instance) REFERENCES instances (scope, name), 
	FOREIGN KEY(scope, network) REFERENCES networks (scope, name), 
	FOREIGN KEY(scope, policy) REFERENCES policies (scope, name)
);
INSERT INTO "ports" VALUES('','tap-z','vm1','private','bw-limiter',NULL,'shape',1500,0);
INSERT INTO "ports" VALUES('','tap-a','vm1','private',NULL,'{"ingress":{"rate":"200mbit","peak":"400mbit","burst":"64kb","pps":20000,"pps_burst":2000},"egress":{"rate":"200mbit","dscp":46}}','police',9000,1);
INSERT INTO "ports" VALUES('','tap-m','vm1',NULL,NULL,'{"egress":{"pps":1000}}','shape',1500,2);
INSERT INTO "ports" VALUES('','tap-vm2','vm2','public',NULL,NULL,'shape',1500,0);
INSERT INTO "ports" VALUES('lab-host','tap-vm1','vm1','private',NULL,NULL,'shape',1500,0);
INSERT INTO "ports" VALUES('lab-host','tap-vm2','vm2','private','bw-limiter',NULL,'shape',1500,0);
CREATE TABLE quarantines (
	scope VARCHAR NOT NULL, 
	device VARCHAR NOT NULL, 
	qos TEXT NOT NULL, 
	reason TEXT NOT NULL, 
	since DATETIME NOT NULL, 
	PRIMARY KEY (scope, device)
);
INSERT INTO "quarantines" VALUES('','tap-a','{"egress": {"rate": "1mbit", "pps": 100}}','syn flood','2026-11-30 12:34:56.789000');
CREATE TABLE revisions (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, 
	scope VARCHAR NOT NULL, 
	at DATETIME NOT NULL, 
	actor VARCHAR NOT NULL, 
	summary TEXT NOT NULL
);
INSERT INTO "revisions" VALUES(1,'','2026-12-06 22:04:13.212954','apply','empty host');
INSERT INTO "revisions" VALUES(2,'','2026-12-06 22:04:13.224458','apply','3 ports');
INSERT INTO "revisions" VALUES(3,'lab-host','2026-12-06 22:04:13.230760','port set','port tap-vm2');
INSERT INTO "revisions" VALUES(4,'gone','2026-12-06 22:04:13.231887','cli','');
INSERT INTO "revisions" VALUES(5,'gone','2026-12-06 22:04:13.232448','cli','emptied');
INSERT INTO "revisions" VALUES(6,'','2026-12-06 22:04:13.234860','cli','volume type gold');
INSERT INTO "revisions" VALUES(7,'','2026-12-06 22:04:13.235262','cli','volume type plain');
INSERT INTO "revisions" VALUES(8,'','2026-12-06 22:04:13.236313','cli','attached data1');
INSERT INTO "revisions" VALUES(9,'','2026-12-06 22:04:13.236730','cli','volume spare');
CREATE TABLE usage (
	scope VARCHAR NOT NULL, 
	device VARCHAR NOT NULL, 
	direction VARCHAR NOT NULL, 
	local_ip VARCHAR NOT NULL, 
	remote_ip VARCHAR NOT NULL, 
	granularity VARCHAR NOT NULL, 
	period_start DATETIME NOT NULL, 
	bytes BIGINT NOT NULL, 
	packets BIGINT NOT NULL, 
	PRIMARY KEY (scope, device, direction, local_ip, remote_ip, granularity, period_start)
);
INSERT INTO "usage" VALUES('','tap-a','egress','10.0.0.5','192.0.2.7','hour','2026-11-30 12:00:00.000000',1500000,1000);
INSERT INTO "usage" VALUES('','tap-a','egress','10.0.0.5','192.0.2.7','day','2026-11-30 00:00:00.000000',1500500,1001);
INSERT INTO "usage" VALUES('','tap-a','ingress','10.0.0.5','192.0.2.7','hour','2026-11-30 12:00:00.000000',64000,100);
INSERT INTO "usage" VALUES('','tap-a','ingress','10.0.0.5','192.0.2.7','day','2026-11-30 00:00:00.000000',64000,100);
INSERT INTO "usage" VALUES('','tap-a','egress','10.0.0.5','192.0.2.7','hour','2026-11-30 13:00:00.000000',500,1);
CREATE TABLE usage_cursors (
	scope VARCHAR NOT NULL, 
	direction VARCHAR NOT NULL, 
	device VARCHAR NOT NULL, 
	local_ip VARCHAR NOT NULL, 
	remote_ip VARCHAR NOT NULL, 
	bytes BIGINT NOT NULL, 
	packets BIGINT NOT NULL, 
	PRIMARY KEY (scope, direction, device, local_ip, remote_ip)
);
INSERT INTO "usage_cursors" VALUES('','egress','tap-a','10.0.0.5','192.0.2.7',9000500,6001);
CREATE TABLE volume_types (
	scope VARCHAR NOT NULL, 
	name VARCHAR NOT NULL, 
	consumer VARCHAR NOT NULL, 
	specs TEXT NOT NULL, 
	qos_name VARCHAR, 
	PRIMARY KEY (scope, name)
);
INSERT INTO "volume_types" VALUES('','gold','front-end','{"read_bytes_sec_per_gb": "1048576", "total_iops_sec": "500"}','gold-qos');
INSERT INTO "volume_types" VALUES('','plain','back-end','{}',NULL);
CREATE TABLE volumes (
	scope VARCHAR NOT NULL, 
	name VARCHAR NOT NULL, 
	type VARCHAR, 
	size_gb INTEGER NOT NULL, 
	instance VARCHAR, 
	device VARCHAR, 
	PRIMARY KEY (scope, name), 
	FOREIGN KEY(scope, type) REFERENCES volume_types (scope, name)
);
INSERT INTO "volumes" VALUES('','data1','gold',20,'vm1','vdb');
INSERT INTO "volumes" VALUES('','spare','plain',1,NULL,NULL);
CREATE INDEX ix_revisions_scope ON revisions (scope, id);
CREATE INDEX ix_events_scope ON events (scope, id);
CREATE INDEX ix_usage_period ON usage (scope, granularity, period_start);
CREATE INDEX ix_ports_instance ON ports (scope, instance, position);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('revisions',9);
INSERT INTO "sqlite_sequence" VALUES('events',2);
COMMIT;
