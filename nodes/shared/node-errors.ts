import { NodeOperationError, type INode } from 'n8n-workflow';

import { MessageInputError } from '../../model/validate';
import { ActionableError } from '../../model/actionable-error';
import { redactSecrets } from '../../model/redact';

// n8n replaces a whole error message that merely contains one of these codes with a generic
// sentence (losing host, port and hint), so they are spelled out in words instead.
const SYSTEM_CODES: Record<string, string> = {
	ECONNREFUSED: 'connection refused',
	ECONNRESET: 'connection reset',
	ENOTFOUND: 'host name not found',
	ETIMEDOUT: 'timed out',
	ECONNABORTED: 'connection aborted',
	EHOSTUNREACH: 'host unreachable',
	EADDRNOTAVAIL: 'address not available',
	EAI_AGAIN: 'name lookup failed',
	GETADDRINFO: 'name lookup',
	ENOENT: 'no such file',
	EACCES: 'permission denied',
	EPERM: 'operation not permitted',
};
const SYSTEM_CODE_PATTERN = new RegExp(`\\b(${Object.keys(SYSTEM_CODES).join('|')})\\b`, 'gi');

function humanizeSystemCodes(text: string): string {
	return text.replace(SYSTEM_CODE_PATTERN, (code) => SYSTEM_CODES[code.toUpperCase()] ?? code);
}

export interface ItemErrorJson {
	message: string;
	code: string;
	hint: string;
	[key: string]: string;
}

/** One description of a failure for both paths: thrown error and continueOnFail output. */
export function describeItemError(error: unknown, secrets: Iterable<string | undefined>): ItemErrorJson {
	const known = [...secrets];
	let message: string;
	let code: string;
	let hint: string;
	if (error instanceof MessageInputError) {
		message = error.message;
		code = 'INVALID_INPUT';
		hint = error.hint ?? `Correct the field "${error.field}"`;
	} else if (error instanceof ActionableError) {
		message = error.message;
		code = error.code;
		hint = error.hint;
	} else if (error instanceof NodeOperationError) {
		message = error.message;
		code = 'NODE_ERROR';
		hint = typeof error.description === 'string' ? error.description : '';
	} else {
		message = error instanceof Error ? error.message : String(error);
		code = 'UNEXPECTED';
		hint = 'Unexpected failure; see the message';
	}
	return {
		message: humanizeSystemCodes(redactSecrets(message, known)),
		code,
		hint: redactSecrets(hint, known),
	};
}

export function toNodeOperationError(
	node: INode,
	error: unknown,
	itemIndex: number,
	secrets: Iterable<string | undefined>,
): NodeOperationError {
	const { message, hint } = describeItemError(error, secrets);
	return new NodeOperationError(node, `Item ${itemIndex}: ${message}`, {
		itemIndex,
		description: hint,
	});
}

/**
 * For list pickers (loadOptions), whose errors n8n shows in the editor as they are: the
 * same redacted one-line message and hint as an item error, without an item number.
 */
export function toLoadOptionsError(node: INode, error: unknown, secrets: Iterable<string | undefined>): NodeOperationError {
	const { message, hint } = describeItemError(error, secrets);
	return new NodeOperationError(node, message, { description: hint });
}
