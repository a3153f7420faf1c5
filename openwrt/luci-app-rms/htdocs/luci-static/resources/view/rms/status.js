'use strict';
'require view';
'require rpc';
'require poll';

// The True Cloud node as `rms status --json` describes it, through the rpcd plugin luci.rms.
// Every value is shown as text (E() escapes it): the status is data, never markup.

var callStatus = rpc.declare({
	object: 'luci.rms',
	method: 'status',
	expect: { '': {} }  // the whole reply; {} when empty
});

function duration(seconds) {
	var s = Math.max(0, Math.floor(Number(seconds) || 0));
	var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
	return (d ? d + 'd ' : '') + (d || h ? h + 'h ' : '') + m + 'm';
}

function row(label, value) {
	return E('tr', { 'class': 'tr' }, [
		E('td', { 'class': 'td left', 'width': '33%' }, [ label ]),
		E('td', { 'class': 'td left' }, [ String(value) ])
	]);
}

function handshakes(vpn) {
	var peers = Array.isArray(vpn.peers) ? vpn.peers : [];
	var fresh = peers.filter(function(p) { return p && p.handshake_age_s != null; });
	return fresh.length + '/' + peers.length;
}

function vpnTable(vpns) {
	if (!Array.isArray(vpns) || vpns.length === 0)
		return E('p', {}, [ _('In no management VPN yet.') ]);
	var head = E('tr', { 'class': 'tr table-titles' }, [
		_('VPN'), _('Role'), _('Members'), _('Address'), _('Handshakes')
	].map(function(t) { return E('th', { 'class': 'th' }, [ t ]); }));
	var rows = vpns.filter(function(v) { return v && typeof v === 'object'; }).map(function(v) {
		return E('tr', { 'class': 'tr' }, [
			String(v.uuid), String(v.role), String(v.members), String(v.address), handshakes(v)
		].map(function(t) { return E('td', { 'class': 'td' }, [ t ]); }));
	});
	return E('table', { 'class': 'table' }, [ head ].concat(rows));
}

function overview(status) {
	var rows = [
		row(_('State'), status.state || _('unknown')),
		row(_('Node'), status.node_id || '-'),
		row(_('Version'), status.version || '-'),
		row(_('Uptime'), status.uptime_s != null ? duration(status.uptime_s) : '-')
	];
	if (status.reason)
		rows.push(row(_('Reason'), status.reason));
	(Array.isArray(status.problems) ? status.problems : []).forEach(function(p) {
		rows.push(row(_('Problem'), p));
	});
	return E('table', { 'class': 'table', 'id': 'rms-overview' }, rows);
}

function page(status) {
	status = (status && typeof status === 'object') ? status : {};
	return E('div', { 'id': 'rms-status' }, [
		E('h3', {}, [ _('Node') ]), overview(status),
		E('h3', {}, [ _('Management VPNs') ]), vpnTable(status.vpns)
	]);
}

return view.extend({
	load: function() {
		return callStatus();
	},

	render: function(status) {
		var root = E('div', { 'class': 'cbi-map' }, [
			E('h2', {}, [ _('True Cloud') ]),
			E('div', { 'class': 'cbi-map-descr' }, [
				_('What this router contributes to the cloud, as the node agent reports it.')
			]),
			page(status)
		]);
		poll.add(function() {
			return callStatus().then(function(fresh) {
				var old = root.querySelector('#rms-status');
				if (old)
					old.replaceWith(page(fresh));
			});
		}, 10);
		return root;
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
